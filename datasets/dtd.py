"""Describable Textures (DTD): ``dtd/images/<texture>/<image>.jpg`` and ``split_zhou_DescribableTextures.json``.

Registered as ``DescribableTextures`` (CoOp's name, used by its ``configs/datasets/dtd.yaml``) and as
``DTD``.
"""
from mutual_prompt.backend import DATASET_REGISTRY
from mutual_prompt.data import Split, SplitFileDataset, read_and_split_data


@DATASET_REGISTRY.register()
class DescribableTextures(SplitFileDataset):
    dataset_dir = "dtd"
    image_folder = "images"
    split_name = "DescribableTextures"

    def create_split(self) -> Split:
        return read_and_split_data(self.image_dir)


@DATASET_REGISTRY.register()
class DTD(DescribableTextures):
    """The same dataset under its short name."""
