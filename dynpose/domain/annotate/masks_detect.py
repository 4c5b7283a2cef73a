"""Offline detectors for dynamic masking: people and hands from models bundled in PyPI packages.

The paper uses OneFormer (COCO dynamic classes) and Hands23. Neither can be downloaded here, so the
CPU defaults are what ships inside ``mediapipe`` 0.10.21 and OpenCV 4.11:

- people: MediaPipe Pose (BlazePose full, with its segmentation head). It finds one person per
  call, so it is run repeatedly, greying out each person found, up to ``max_people`` times. It
  misses people that are small (below ~1/6 of the frame height), seen from far behind, lying or
  heavily occluded, and it sometimes fires on animal heads.
- people, optional: OpenCV's HOG pedestrian detector (upright full bodies of 64x128 px and more),
  refined by Pose on the crop and otherwise kept as an ellipse inside the box.
- hands: MediaPipe Hands (up to ``max_hands`` hands); the hand is the hull of its 21 landmarks.

Nothing here detects animals, vehicles or sports equipment: those are left to the motion mask.
MediaPipe's legacy graphs are not thread safe, so each thread keeps its own instances.
"""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np

_local = threading.local()


def _mediapipe():
    os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging is chatty
    import mediapipe as mp

    return mp


def _pose():
    if getattr(_local, "pose", None) is None:
        mp = _mediapipe()
        _local.pose = mp.solutions.pose.Pose(
            static_image_mode=True, model_complexity=1, enable_segmentation=True, min_detection_confidence=0.5
        )
    return _local.pose


def _hands(max_hands: int):
    key = f"hands{max_hands}"
    if getattr(_local, key, None) is None:
        mp = _mediapipe()
        setattr(
            _local,
            key,
            mp.solutions.hands.Hands(
                static_image_mode=True, max_num_hands=max_hands, model_complexity=1, min_detection_confidence=0.5
            ),
        )
    return getattr(_local, key)


def _disk(radius: int) -> np.ndarray:
    r = max(int(radius), 0)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def segment_people(
    img: np.ndarray, max_people: int = 4, seg_thresh: float = 0.5, min_area: float = 5e-4
) -> list[np.ndarray]:
    """One bool mask per person found by repeated MediaPipe Pose calls on an RGB uint8 image."""
    pose = _pose()
    h, w = img.shape[:2]
    work = np.ascontiguousarray(img)
    grey = np.array([127, 127, 127], np.uint8)
    found = []
    for _ in range(max_people):
        res = pose.process(work)
        if res.segmentation_mask is None:
            break
        mask = res.segmentation_mask > seg_thresh
        if mask.mean() < min_area:
            break
        found.append(mask)
        # Hide this person (generously) so that the next call finds someone else.
        hide = cv2.dilate(mask.astype(np.uint8), _disk(max(3, round(0.02 * max(h, w))))) > 0
        if work is img:
            work = img.copy()
        work[hide] = grey
    return found


def _hog():
    if getattr(_local, "hog", None) is None:
        hog = cv2.HOGDescriptor()
        hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        _local.hog = hog
    return _local.hog


def hog_people(img: np.ndarray, covered: np.ndarray, min_weight: float = 0.5) -> list[np.ndarray]:
    """People boxes from HOG that ``covered`` does not already explain, as masks (Pose on the crop)."""
    h, w = img.shape[:2]
    boxes, weights = _hog().detectMultiScale(img, winStride=(8, 8), padding=(8, 8), scale=1.05)
    out = []
    for (x, y, bw, bh), wt in zip(np.reshape(boxes, (-1, 4)), np.ravel(weights)):
        if wt < min_weight or covered[y : y + bh, x : x + bw].mean() > 0.3:
            continue
        x0, y0 = max(0, x - bw // 4), max(0, y - bh // 8)
        x1, y1 = min(w, x + bw + bw // 4), min(h, y + bh + bh // 8)
        crop = np.ascontiguousarray(img[y0:y1, x0:x1])
        people = segment_people(crop, max_people=1)
        mask = np.zeros((h, w), bool)
        if people:
            mask[y0:y1, x0:x1] = people[0]
        else:  # Pose could not confirm: keep the box's inscribed ellipse
            cv2.ellipse(mask.view(np.uint8), (x + bw // 2, y + bh // 2), (bw * 3 // 8, bh * 7 // 16), 0, 0, 360, 1, -1)
        out.append(mask)
    return out


def detect_hands(img: np.ndarray, max_hands: int = 4) -> list[np.ndarray]:
    """(21, 2) landmark pixel coordinates per hand found by MediaPipe Hands in an RGB uint8 image."""
    res = _hands(max_hands).process(np.ascontiguousarray(img))
    if not res.multi_hand_landmarks:
        return []
    h, w = img.shape[:2]
    return [np.array([[p.x * w, p.y * h] for p in hand.landmark], np.float32) for hand in res.multi_hand_landmarks]


def hand_mask(landmarks: np.ndarray, shape: tuple[int, int], grow: float = 0.15) -> np.ndarray:
    """Filled hull of a hand's landmarks, grown by ``grow`` x hand size (landmarks sit inside the skin)."""
    mask = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(landmarks).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1)
    size = float(np.ptp(landmarks, axis=0).max())
    return cv2.dilate(mask, _disk(max(1, round(grow * size)))) > 0
