"""Click to mask: a click or a box in Label Studio -> the object's mask (the project's Mask R-CNN
heads, else GrabCut), answered as one brush (or polygon) region. See `clicker` for the method,
`service` for Label Studio's interactive requests."""

from officescore.label.interactive.clicker import GRABCUT, MODEL, Clicker, Reply
from officescore.label.interactive.heads import FeatureCache
from officescore.label.interactive.prompt import Click, Prompt, parse_context

__all__ = ["GRABCUT", "MODEL", "Click", "Clicker", "FeatureCache", "Prompt", "Reply", "parse_context"]
