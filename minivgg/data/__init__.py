"""The data: Fashion-MNIST's files (`fashion_mnist.py`), batches on a device (`loader.py`) and your own
images in one sub-folder per class (`images.py`)."""
from .fashion_mnist import (COUNTS, DEBIAN_DIR, FILES, URL, DatasetError, cache_dir, load_data_fashion_mnist,
                            load_fashion_mnist, parse_idx, search_dirs, text_labels)
from .images import IMAGE_FORMATS, ImageFolder, class_folders, require_pillow, split
from .loader import DataLoader, bilinear_matrix, resize_bilinear

__all__ = ["COUNTS", "DEBIAN_DIR", "FILES", "URL", "DatasetError", "cache_dir", "load_data_fashion_mnist",
           "load_fashion_mnist", "parse_idx", "search_dirs", "text_labels", "IMAGE_FORMATS", "ImageFolder", "class_folders",
           "require_pillow", "split", "DataLoader", "bilinear_matrix", "resize_bilinear"]
