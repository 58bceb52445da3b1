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
run("Set Measurements...", "area mean centroid shape redirect=None decimal=3");

run("DeepImageJ Run", "model=[unet-pancreatic] format=Tensorflow preprocessing=[preprocessing.txt] postprocessing=[postprocessing.txt] axes=Y,X,C logging=Normal");
labels = getTitle();

// the post-processing added one ROI per cell to the ROI Manager: measure them on the input
getRawStatistics(nPixels, mean, min, nCells);
print("pancreatic_pipeline: " + nCells + " cells in " + input);
selectImage(input);
roiManager("Measure");
selectImage(labels);
