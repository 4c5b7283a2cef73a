"""Evaluation metrics (docs/evaluation.md), one module per quantity:

- ``trajectory``: ATE / RPE after Sim(3) alignment with evo, failure and nearest-frame filling;
- ``reprojection``: Sampson reprojection error of ground-truth correspondences, 720p pixels;
- ``precision_recall``: filter PR curves, VOC-smoothed average precision, precision at recall;
- ``dataset_stats``: video length, camera rotation (yaw / pitch) statistics, mask area;
- ``plots``: small PNG figures of the above (imports matplotlib; import it only to plot).
"""
