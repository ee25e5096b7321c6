"""``Datum``, ``DatasetBase`` and the dataset registry, with Dassl's interface.

The few-shot sampler follows Dassl's algorithm and sequence of random draws exactly, so that a
sorted listing gives the same picks as CoOp under the same seed.
"""
import os
import random
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

from ..registry import Registry

DATASET_REGISTRY = Registry("DATASET")


class Datum:
    """One labelled image: path, class label, domain label and class name."""

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = "") -> None:
        if not isinstance(impath, str):
            raise TypeError(f"Datum.impath must be a str, got {type(impath).__name__}: {impath!r}")
        if not os.path.isfile(impath):
            raise FileNotFoundError(f"Image file not found: {impath}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        return self._impath

    @property
    def label(self) -> int:
        return self._label

    @property
    def domain(self) -> int:
        return self._domain

    @property
    def classname(self) -> str:
        return self._classname

    def __repr__(self) -> str:
        return f"Datum(impath={self._impath!r}, label={self._label}, domain={self._domain}, classname={self._classname!r})"


class DatasetBase:
    """Holds train_x / train_u / val / test lists of ``Datum`` and derives the class names."""

    dataset_dir = ""
    domains: List[str] = []

    def __init__(self, train_x=None, train_u=None, val=None, test=None) -> None:
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> List[str]:
        return self._classnames

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: Sequence[Datum]) -> int:
        if not data_source:
            raise ValueError("The dataset's training split is empty; cannot count its classes")
        return max(item.label for item in data_source) + 1

    @staticmethod
    def get_lab2cname(data_source: Sequence[Datum]) -> Tuple[Dict[int, str], List[str]]:
        mapping = {item.label: item.classname for item in data_source}
        labels = sorted(mapping)
        return {label: mapping[label] for label in labels}, [mapping[label] for label in labels]

    def check_input_domains(self, source_domains: Sequence[str], target_domains: Sequence[str]) -> None:
        if len(source_domains) == 0:
            raise ValueError("DATASET.SOURCE_DOMAINS is empty")
        if len(target_domains) == 0:
            raise ValueError("DATASET.TARGET_DOMAINS is empty")
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains: Sequence[str]) -> None:
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(f"Input domain must belong to {self.domains}, but got [{domain}]")

    def generate_fewshot_dataset(self, *data_sources: List[Datum], num_shots: int = -1, repeat: bool = False):
        """Sample ``num_shots`` items per label from each source (all of a smaller class, or
        with replacement when ``repeat``). Uses ``random`` in Dassl's order of calls."""
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources
        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            dataset = []
            for items in self.split_dataset_by_label(data_source).values():
                if len(items) >= num_shots:
                    sampled = random.sample(items, num_shots)
                elif repeat:
                    sampled = random.choices(items, k=num_shots)
                else:
                    sampled = items
                dataset.extend(sampled)
            output.append(dataset)
        return output[0] if len(output) == 1 else output

    def split_dataset_by_label(self, data_source: Sequence[Datum]) -> Dict[int, List[Datum]]:
        output: Dict[int, List[Datum]] = defaultdict(list)
        for item in data_source:
            output[item.label].append(item)
        return output

    def split_dataset_by_domain(self, data_source: Sequence[Datum]) -> Dict[int, List[Datum]]:
        output: Dict[int, List[Datum]] = defaultdict(list)
        for item in data_source:
            output[item.domain].append(item)
        return output


def build_dataset(cfg) -> DatasetBase:
    avai = DATASET_REGISTRY.registered_names()
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    if cfg.DATASET.NAME not in DATASET_REGISTRY:
        raise KeyError(
            f'DATASET.NAME "{cfg.DATASET.NAME}" is not a registered dataset; registered: {", ".join(sorted(avai))}'
        )
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
