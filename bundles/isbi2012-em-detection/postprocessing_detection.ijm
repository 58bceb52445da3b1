// deepimagej U-Net detection post-processing: class probabilities -> one point per object.
// Input: the model output (soft-max probabilities; channel 2 = object centre).
// Output: a multi-point selection (also added to the ROI Manager) and a Results table
// (X, Y, Slice, Probability): the local maxima of the Gaussian-smoothed centre probability
// above the threshold, at least 'radius' pixels apart (ties: the first in reading order).
// Python equivalent: deepimagej.unet.postprocess.to_detections(prob, threshold, min_distance, smooth_sigma).
threshold = 0.4;
sigma = 3.0;
radius = 5;
getDimensions(width, height, channels, slices, frames);
source = getTitle();
if (channels > 1) {
    run("Duplicate...", "title=centres duplicate channels=2");
} else {
    run("Duplicate...", "title=centres duplicate");
}
run("32-bit");
centres = getImageID();
if (sigma > 0) run("Gaussian Blur...", "sigma=" + sigma + " stack");
run("Duplicate...", "title=centres_max duplicate");
run("Maximum...", "radius=" + radius + " stack");
imageCalculator("Subtract create 32-bit stack", "centres_max", "centres");
below_max = getImageID();
close("centres_max");
r2 = radius * radius + 1;
px = newArray(0); py = newArray(0); pz = newArray(0); pv = newArray(0);
for (z = 1; z <= nSlices; z++) {
    selectImage(centres);
    setSlice(z);
    cx = newArray(0); cy = newArray(0); cv = newArray(0);
    for (y = 0; y < height; y++) {
        for (x = 0; x < width; x++) {
            v = getPixel(x, y);
            if (v > threshold) {
                cx = Array.concat(cx, x); cy = Array.concat(cy, y); cv = Array.concat(cv, v);
            }
        }
    }
    selectImage(below_max);
    setSlice(z);
    first = px.length;
    for (i = 0; i < cx.length; i++) {
        if (getPixel(cx[i], cy[i]) == 0) {
            keep = true;
            for (j = first; j < px.length && keep; j++) {
                if ((px[j] - cx[i]) * (px[j] - cx[i]) + (py[j] - cy[i]) * (py[j] - cy[i]) <= r2) keep = false;
            }
            if (keep) {
                px = Array.concat(px, cx[i]); py = Array.concat(py, cy[i]);
                pz = Array.concat(pz, z); pv = Array.concat(pv, cv[i]);
            }
        }
    }
}
close("Result of centres_max");
selectImage(centres);
rename(source + "_detections");
run("Clear Results");
for (i = 0; i < px.length; i++) {
    setResult("X", i, px[i]);
    setResult("Y", i, py[i]);
    setResult("Slice", i, pz[i]);
    setResult("Probability", i, pv[i]);
}
updateResults();
if (px.length > 0) {
    makeSelection("point", px, py);
    roiManager("Add");
}
print("deepimagej detection: " + px.length + " objects");
