// deepimagej U-Net post-processing: class probabilities -> instance labels.
// Input: the model output (soft-max probabilities; channel 2 = foreground / cell).
// Output: a 16-bit label image, one grey value per object (8-connected components of
// foreground probability > 0.5, as Analyze Particles "Count Masks" makes them; "clear" restarts
// the numbering at 1 whatever the Results table holds).
// Python equivalent: deepimagej.unet.postprocess.to_instances(prob, threshold=0.5).
threshold = 0.5;
getDimensions(width, height, channels, slices, frames);
source = getTitle();
if (channels > 1) {
    run("Duplicate...", "title=foreground duplicate channels=2");
} else {
    run("Duplicate...", "title=foreground duplicate");
}
setThreshold(threshold, 1e30);
setOption("BlackBackground", true);
if (nSlices > 1) {
    run("Convert to Mask", "method=Default background=Dark black");
    run("Analyze Particles...", "size=0-Infinity show=[Count Masks] clear stack");
} else {
    run("Convert to Mask");
    run("Analyze Particles...", "size=0-Infinity show=[Count Masks] clear");
}
rename(source + "_labels");
close("foreground");
