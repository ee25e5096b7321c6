"""EuroSAT (RGB): ``eurosat/2750/<LandUse>/<image>.jpg`` and ``split_zhou_EuroSAT.json``, with CoOp's
descriptive class names."""
import os

from mutual_prompt.backend import DATASET_REGISTRY, DatasetBase
from mutual_prompt.splits import (
    dataset_folder,
    fewshot_and_subsample,
    load_or_create_split,
    read_and_split_data,
    require_dir,
)

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
class EuroSAT(DatasetBase):
    dataset_dir = "eurosat"

    def __init__(self, cfg) -> None:
        self.dataset_dir = dataset_folder(cfg, "eurosat", "EuroSAT")
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "2750"), "EuroSAT")
        self.split_path = os.path.join(self.dataset_dir, "split_zhou_EuroSAT.json")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        train, val, test = load_or_create_split(
            self.split_path, self.image_dir, lambda: read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES)
        )
        train, val, test = fewshot_and_subsample(self, cfg, train, val, test, self.split_fewshot_dir, self.image_dir)
        super().__init__(train_x=train, val=val, test=test)
