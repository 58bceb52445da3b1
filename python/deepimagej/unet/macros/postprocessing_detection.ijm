// deepimagej U-Net detection post-processing: class probabilities -> one point per object.
// Input: the model output (soft-max probabilities; channel 2 = object centre).
// Output: a multi-point selection (also added to the ROI Manager) and a Results table
// (X, Y, Slice, Probability, Source): the local maxima of the Gaussian-smoothed centre probability
// above the threshold, at least 'radius' pixels apart (ties: the first in reading order).
// A two-head model (4 channels, 2D) also gives the cell probability (channel 4): every solid
// cell (8-connected, holes filled, area >= min_cell_area px, solidity >= min_solidity) of
// probability > cell_threshold gives its centroid (Source "cell", Probability = the cell's mean)
// instead of the peaks inside it; cell_threshold < 0 switches this off.
// Python equivalent: deepimagej.unet.postprocess.to_detections(prob, **detection_settings(bundle)).
// Parameters: deepimagej writes the bundle's settings here (rdf.yaml: config.deepimagej_py.detection).
threshold = 0.5;
sigma = 1.0;
radius = 3;
cell_threshold = -1.0;
min_cell_area = 1000;
min_solidity = 0.65;
getDimensions(width, height, channels, slices, frames);
source = getTitle();
source_id = getImageID();
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
ps = newArray(px.length);
Array.fill(ps, 0);
if (cell_threshold >= 0 && channels >= 4 && slices * frames == 1) {
    selectImage(source_id);
    run("Duplicate...", "title=cell_probability duplicate channels=4");
    run("32-bit");
    run("Properties...", "channels=1 slices=1 frames=1 unit=pixel pixel_width=1 pixel_height=1 voxel_depth=1");
    cell_probability = getImageID();
    run("Duplicate...", "title=cell_mask");
    setThreshold(cell_threshold, 1e30);
    setOption("BlackBackground", true);
    run("Convert to Mask");
    // "clear": the Count Masks numbering starts at 1 whatever the Results table holds
    run("Analyze Particles...", "size=" + min_cell_area + "-Infinity pixel show=[Count Masks] clear include");
    cells = getImageID();
    close("cell_mask");
    selectImage(cells);
    getStatistics(area, mean, min, n_cells);
    first_x = newArray(n_cells + 1); first_y = newArray(n_cells + 1); solid = newArray(n_cells + 1);
    Array.fill(first_x, -1);
    for (y = 0; y < height; y++) {
        for (x = 0; x < width; x++) {
            v = getPixel(x, y);
            if (v > 0) {
                if (first_x[v] < 0) { first_x[v] = x; first_y[v] = y; }
            }
        }
    }
    cx = newArray(0); cy = newArray(0); cv = newArray(0);
    for (v = 1; v <= n_cells; v++) {
        if (first_x[v] >= 0) {
            selectImage(cells);
            doWand(first_x[v], first_y[v], 0, "8-connected");
            if (getValue("Solidity") >= min_solidity) {
                solid[v] = 1;
                cx = Array.concat(cx, getValue("X") - 0.5); cy = Array.concat(cy, getValue("Y") - 0.5);
                selectImage(cell_probability);
                run("Restore Selection");
                cv = Array.concat(cv, getValue("Mean"));
            }
        }
    }
    selectImage(cells);
    run("Select None");
    qx = newArray(0); qy = newArray(0); qz = newArray(0); qv = newArray(0);
    for (i = 0; i < px.length; i++) {
        if (solid[getPixel(px[i], py[i])] == 0) {
            qx = Array.concat(qx, px[i]); qy = Array.concat(qy, py[i]);
            qz = Array.concat(qz, pz[i]); qv = Array.concat(qv, pv[i]);
        }
    }
    ps = newArray(qx.length + cx.length);
    Array.fill(ps, 1);
    for (i = 0; i < qx.length; i++) ps[i] = 0;
    px = Array.concat(qx, cx); py = Array.concat(qy, cy); pv = Array.concat(qv, cv);
    pz = Array.concat(qz, newArray(cx.length));
    for (i = qx.length; i < pz.length; i++) pz[i] = 1;
    close("Count Masks of cell_mask");
    selectImage(cell_probability);
    close();
}
selectImage(centres);
rename(source + "_detections");
run("Clear Results");
for (i = 0; i < px.length; i++) {
    setResult("X", i, px[i]);
    setResult("Y", i, py[i]);
    setResult("Slice", i, pz[i]);
    setResult("Probability", i, pv[i]);
    if (ps[i] == 1) setResult("Source", i, "cell");
    else setResult("Source", i, "peak");
}
updateResults();
if (px.length > 0) {
    makeSelection("point", px, py);
    roiManager("Add");
}
print("deepimagej detection: " + px.length + " objects");
