// Pancreatic stem cell segmentation with DeepImageJ, from the command line or ImageJ/Fiji.
//
//   deepimagej macro macros/pancreatic_pipeline.ijm --image exampleImage.tif -o labels.tif
//
// or, in ImageJ with the DeepImageJ commands installed: open a phase-contrast image, then run
// this macro. Steps: the U-Net bundle "unet-pancreatic" runs with its own ImageJ macros
// (preprocessing.txt: scale to [0, 1]; postprocessing.txt: threshold 0.5, watershed, label
// image with one value per cell), then every cell is measured on the input image.
// The label image is left as the active image (the command line saves it with -o).

if (nImages == 0) exit("Open a phase-contrast image first (command line: --image FILE).");
input = getTitle();
run("DeepImageJ Run", "model=[unet-pancreatic] format=Tensorflow preprocessing=[preprocessing.txt] postprocessing=[postprocessing.txt] axes=Y,X,C logging=Normal");
labels = getTitle();

// one row per cell in the Results table, intensities measured on the input image
getRawStatistics(nPixels, mean, min, nCells);
print("pancreatic_pipeline: " + nCells + " cells in " + input);
run("Set Measurements...", "area mean centroid shape redirect=[" + input + "] decimal=3");
setThreshold(1, 65535);
run("Analyze Particles...", "display clear");
resetThreshold();
run("Set Measurements...", "area mean centroid shape redirect=None decimal=3");
