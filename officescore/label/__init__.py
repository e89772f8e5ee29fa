"""Label Studio: the labelling loop with a model's help.

- `formats`   labelling config XML and the task / prediction / annotation JSON Label Studio reads
              (polygons from mask contours or Label Studio brush RLE), and the way back to masks
- `regions`   mask <-> polygon (percent coordinates) and mask <-> brush RLE conversions
- `predict`   run a model over photos (through `officescore.infer.Predictor`) into tasks / COCO
- `client`    a small wrapper over label-studio-sdk with one-sentence errors
- `push`, `pull`  send photos and predictions to a project; bring its annotations back as COCO
- `backend`   the ML backend (health / setup / predict / webhook) that suggests as a labeller works

Nothing here imports label-studio-sdk, shapely or torch at import time: `officescore --help` and the
other commands stay fast.
"""
