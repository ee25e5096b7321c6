"""EuroSAT (RGB): ``eurosat/2750/<LandUse>/<image>.jpg`` and ``split_zhou_EuroSAT.json``, with CoOp's
descriptive class names."""
from mutual_prompt.backend import DATASET_REGISTRY
from mutual_prompt.data import Split, SplitFileDataset, read_and_split_data

NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(SplitFileDataset):
    dataset_dir = "eurosat"
    image_folder = "2750"
    split_name = "EuroSAT"

    def create_split(self) -> Split:
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES)
