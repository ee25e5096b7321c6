"""Food-101: ``food-101/images/<dish>/<image>.jpg`` and ``split_zhou_Food101.json``."""
from mutual_prompt.backend import DATASET_REGISTRY
from mutual_prompt.data import Split, SplitFileDataset, read_and_split_data


@DATASET_REGISTRY.register()
class Food101(SplitFileDataset):
    dataset_dir = "food-101"
    image_folder = "images"
    split_name = "Food101"

    def create_split(self) -> Split:
        return read_and_split_data(self.image_dir)
