"""officescore: data-centric instance segmentation of home offices."""

__version__ = "0.1.0"

DEFAULT_CLASSES: tuple[str, ...] = (
    "desk",
    "chair",
    "monitor",
    "laptop",
    "keyboard",
    "mouse",
    "plant",
    "lamp",
    "bookshelf",
    "mug",
)
