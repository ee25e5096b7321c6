"""Caltech-101: ``caltech-101/101_ObjectCategories/<category>/<image>.jpg`` and
``split_zhou_Caltech101.json``. As in CoOp, the background and easy-faces folders are not classes and
four plural or capitalised folder names are renamed."""
from mutual_prompt.backend import DATASET_REGISTRY
from mutual_prompt.data import Split, SplitFileDataset, read_and_split_data

IGNORED = ("BACKGROUND_Google", "Faces_easy")
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@DATASET_REGISTRY.register()
class Caltech101(SplitFileDataset):
    dataset_dir = "caltech-101"
    image_folder = "101_ObjectCategories"
    split_name = "Caltech101"

    def create_split(self) -> Split:
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
