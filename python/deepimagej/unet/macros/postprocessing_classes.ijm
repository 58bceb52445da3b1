// deepimagej U-Net post-processing: class probabilities -> class map.
// Input: the model output (soft-max probabilities, one channel per class; channel 1 = background).
// Output: an 8-bit image, each pixel the class (0 = background, 1, 2, ...) of highest probability
// (ties: the lower class). Python equivalent: deepimagej.unet.postprocess.to_classes(prob).
source = getTitle();
getDimensions(width, height, channels, slices, frames);
run("Duplicate...", "title=best duplicate channels=1");
run("32-bit");
newImage("classes", "8-bit black", width, height, slices);
for (c = 2; c <= channels; c++) {
    selectImage(source);
    run("Duplicate...", "title=channel duplicate channels=" + c);
    run("32-bit");
    imageCalculator("Subtract create 32-bit stack", "channel", "best");
    rename("higher");
    setThreshold(1e-30, 1e30);
    setOption("BlackBackground", true);
    run("Convert to Mask", "method=Default background=Dark black");
    run("Divide...", "value=255 stack");
    run("Multiply...", "value=" + (c - 1) + " stack");
    imageCalculator("Max stack", "classes", "higher");
    imageCalculator("Max stack", "best", "channel");
    close("higher");
    close("channel");
}
close("best");
selectImage("classes");
rename(source + "_classes");
