"""UCF101 middle frames: ``ucf101/UCF-101-midframes/<Action_Words>/<video>.jpg``,
``ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt`` and ``split_zhou_UCF101.json``. Class names
split the CamelCase action at capitals: ``ApplyEyeMakeup`` -> "Apply_Eye_Makeup"."""
import os
import re
from typing import Dict, List

from mutual_prompt.backend import DATASET_REGISTRY, DatasetBase, Datum
from mutual_prompt.splits import (
    Split,
    dataset_folder,
    fewshot_and_subsample,
    load_or_create_split,
    make_datum,
    read_text_lines,
    require_dir,
    split_trainval,
)

NAME = "UCF101"


def split_camel_case(action: str) -> str:
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(DatasetBase):
    dataset_dir = "ucf101"

    def __init__(self, cfg) -> None:
        self.dataset_dir = dataset_folder(cfg, "ucf101", NAME)
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "UCF-101-midframes"), NAME)
        self.split_path = os.path.join(self.dataset_dir, "split_zhou_UCF101.json")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        train, val, test = load_or_create_split(self.split_path, self.image_dir, self._split_from_lists)
        train, val, test = fewshot_and_subsample(self, cfg, train, val, test, self.split_fewshot_dir, self.image_dir)
        super().__init__(train_x=train, val=val, test=test)

    def _split_from_lists(self) -> Split:
        class_file = os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")
        cname2lab = {}
        for line in read_text_lines(class_file, NAME):
            fields = line.split(" ")
            if len(fields) != 2 or not fields[0].isdigit():
                raise ValueError(f"{class_file}: expected '<class id> <Action>', got {line!r}")
            cname2lab[fields[1]] = int(fields[0]) - 1
        trainval = self.read_data(cname2lab, "trainlist01.txt")
        test = self.read_data(cname2lab, "testlist01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, cname2lab: Dict[str, int], text_file: str) -> List[Datum]:
        """Lines ``<Action>/<video>.avi[ <class id>]``; the frame is ``<Action_Words>/<video>.jpg``."""
        filepath = os.path.join(self.dataset_dir, "ucfTrainTestlist", text_file)
        items = []
        for line in read_text_lines(filepath, NAME):
            action, _, video = line.split(" ")[0].partition("/")
            if action not in cname2lab:
                raise ValueError(f"{filepath}: action {action!r} of {line!r} is not listed in classInd.txt")
            renamed = split_camel_case(action)
            impath = os.path.join(self.image_dir, renamed, os.path.splitext(video)[0] + ".jpg")
            items.append(make_datum(impath, cname2lab[action], renamed, filepath))
        return items
