"""UCF101 middle frames: ``ucf101/UCF-101-midframes/<Action_Words>/<video>.jpg``,
``ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt`` and ``split_zhou_UCF101.json``. Class names
split the CamelCase action at capitals: ``ApplyEyeMakeup`` -> "Apply_Eye_Makeup"."""
import os
import re
from typing import Dict, List

from mutual_prompt.backend import DATASET_REGISTRY, Datum
from mutual_prompt.data import Split, SplitFileDataset, make_datum, read_text_lines, split_trainval

def split_camel_case(action: str) -> str:
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(SplitFileDataset):
    dataset_dir = "ucf101"
    image_folder = "UCF-101-midframes"
    split_name = "UCF101"

    def create_split(self) -> Split:
        class_file = os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt")
        cname2lab = {}
        for line in read_text_lines(class_file, type(self).__name__):
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
        for line in read_text_lines(filepath, type(self).__name__):
            action, _, video = line.split(" ")[0].partition("/")
            if action not in cname2lab:
                raise ValueError(f"{filepath}: action {action!r} of {line!r} is not listed in classInd.txt")
            renamed = split_camel_case(action)
            impath = os.path.join(self.image_dir, renamed, os.path.splitext(video)[0] + ".jpg")
            items.append(make_datum(impath, cname2lab[action], renamed, filepath))
        return items
