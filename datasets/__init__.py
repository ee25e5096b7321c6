"""Importing this package registers every dataset into the backend's DATASET_REGISTRY.

One import per module, sorted by name.
"""
from . import caltech101
from . import dtd
from . import eurosat
from . import fgvc_aircraft
from . import food101
from . import imagenet
from . import imagenet_a
from . import imagenet_r
from . import imagenet_sketch
from . import imagenetv2
from . import oxford_flowers
from . import oxford_pets
from . import stanford_cars
from . import sun397
from . import toy_shapes
from . import ucf101
