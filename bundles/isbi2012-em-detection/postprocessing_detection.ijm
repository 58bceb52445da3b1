// deepimagej U-Net detection post-processing: class probabilities -> one point per object.
// Input: the model output (soft-max probabilities; channel 2 = object centre).
// Output: a multi-point selection on the foreground probability (local maxima with
// probability > 0.5 and prominence 0.1), also added to the ROI Manager.
// Python equivalent: deepimagej.unet.postprocess.to_detections(prob, threshold=0.5).
getDimensions(width, height, channels, slices, frames);
source = getTitle();
if (channels > 1) {
    run("Duplicate...", "title=" + source + "_detections duplicate channels=2");
} else {
    run("Duplicate...", "title=" + source + "_detections duplicate");
}
run("Gaussian Blur...", "sigma=1 stack");
run("Find Maxima...", "prominence=0.1 strict exclude output=[Point Selection] light=false");
if (selectionType() == 10) {
    getSelectionCoordinates(xs, ys);
    keep_x = newArray(xs.length);
    keep_y = newArray(xs.length);
    n = 0;
    for (i = 0; i < xs.length; i++) {
        if (getPixel(xs[i], ys[i]) > 0.5) {
            keep_x[n] = xs[i];
            keep_y[n] = ys[i];
            n++;
        }
    }
    if (n > 0) {
        makeSelection("point", Array.trim(keep_x, n), Array.trim(keep_y, n));
        roiManager("Add");
    } else {
        run("Select None");
    }
}
