"""Is this photo usable for a portrait? Face detection (OpenCV's Haar cascade, shipped in
opencv-python-headless as cv2.data) and a sharpness check (variance of the Laplacian).

`inspect_photo(path)` never raises for a bad photo: it returns a PhotoInspection with ok=False and a
reason a user (or a model) can act on: unreadable file, photo too small, no face, face too small,
too many faces (when limited), too blurry.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from raygent.imaging.base import ImageBackendUnavailable

#: the cascade file in cv2.data.haarcascades
CASCADE = "haarcascade_frontalface_default.xml"


class FaceBox(BaseModel):
    x: int
    y: int
    w: int
    h: int


class InspectionThresholds(BaseModel):
    """What a usable photo needs. Sharpness is measured on the face scaled to `blur_probe_px` wide
    (the whole photo scaled to that width when no face is found), so it does not depend on the
    photo's resolution."""

    min_photo_side: int = Field(200, ge=1, description="shortest side of the photo, pixels")
    min_face_px: int = Field(64, ge=1, description="smallest face width, pixels")
    min_face_fraction: float = Field(0.08, ge=0.0, le=1.0, description="smallest face width / shortest photo side")
    blur_threshold: float = Field(40.0, ge=0.0, description="variance of the Laplacian below which it is blurry")
    blur_probe_px: int = Field(256, ge=32)
    max_faces: int | None = Field(None, ge=1, description="refuse photos with more faces (None: use the largest)")
    detect_max_side: int = Field(800, ge=64, description="the photo is scaled down to this for detection")


class PhotoInspection(BaseModel):
    ok: bool
    reason: str | None = None
    faces: list[FaceBox] = []
    width: int = 0
    height: int = 0
    blur: float | None = None  # variance of the Laplacian (higher = sharper)
    path: str | None = None

    def refusal(self) -> str | None:
        return None if self.ok else f"The photo was refused: {self.reason}"


_local = threading.local()


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise ImageBackendUnavailable("face inspection needs OpenCV: pip install 'raygent[image]' "
                                      "(opencv-python-headless>=4.8,<5)") from exc
    return cv2


def _cascade() -> Any:
    """One classifier per thread (CascadeClassifier is not safe to share between threads)."""
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        cv2 = _cv2()
        path = Path(cv2.data.haarcascades) / CASCADE
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():
            raise ImageBackendUnavailable(f"OpenCV's face cascade is missing ({path}): install "
                                          "opencv-python-headless 4.x (5.x ships no Haar cascades)")
        _local.cascade = cascade
    return cascade


def detect_faces(gray: np.ndarray, max_side: int = 800) -> list[FaceBox]:
    """Frontal faces in a greyscale image, largest first."""
    cv2 = _cv2()
    h, w = gray.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA) \
        if scale < 1.0 else gray
    small = cv2.equalizeHist(small)
    min_side = max(24, int(min(small.shape[:2]) * 0.06))
    found = _cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    boxes = [FaceBox(x=int(x / scale), y=int(y / scale), w=int(bw / scale), h=int(bh / scale))
             for x, y, bw, bh in found]
    return sorted(boxes, key=lambda b: -b.w * b.h)


def sharpness(gray: np.ndarray, probe_px: int = 256) -> float:
    """Variance of the Laplacian of the image scaled to `probe_px` wide (higher = sharper)."""
    cv2 = _cv2()
    h, w = gray.shape[:2]
    if w != probe_px:
        gray = cv2.resize(gray, (probe_px, max(1, round(h * probe_px / w))), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def inspect_photo(path: str | os.PathLike[str], thresholds: InspectionThresholds | dict[str, Any] | None = None
                  ) -> PhotoInspection:
    """Check that the photo shows a face large and sharp enough for a portrait."""
    cv2 = _cv2()
    t = thresholds if isinstance(thresholds, InspectionThresholds) else InspectionThresholds(**(thresholds or {}))
    p = Path(path)
    report = PhotoInspection(ok=False, path=str(p))
    if not p.is_file():
        report.reason = f"the file {p} does not exist"
        return report
    data = np.fromfile(str(p), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        report.reason = f"{p.name} is not a picture that can be read (send a JPEG or PNG photo)"
        return report
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    report.height, report.width = gray.shape[:2]
    if min(report.width, report.height) < t.min_photo_side:
        report.reason = (f"the photo is too small ({report.width}x{report.height} pixels); send one whose shorter "
                         f"side is at least {t.min_photo_side} pixels")
        return report
    report.faces = detect_faces(gray, t.detect_max_side)
    if not report.faces:
        report.blur = round(sharpness(gray, t.blur_probe_px), 1)
        hint = " (it is also blurry)" if report.blur < t.blur_threshold else ""
        report.reason = f"no face was found in the photo{hint}; send a photo where one face looks at the camera"
        return report
    if t.max_faces is not None and len(report.faces) > t.max_faces:
        report.reason = (f"the photo shows {len(report.faces)} faces; send one with at most {t.max_faces} "
                         f"(a photo of just you works best)")
        return report
    face = report.faces[0]
    min_face = max(t.min_face_px, int(t.min_face_fraction * min(report.width, report.height)))
    if face.w < min_face:
        report.reason = (f"the face is too small ({face.w} pixels wide, at least {min_face} needed); send a closer "
                         f"photo or crop it around the face")
        return report
    report.blur = round(sharpness(gray[face.y:face.y + face.h, face.x:face.x + face.w], t.blur_probe_px), 1)
    if report.blur < t.blur_threshold:
        report.reason = (f"the photo is too blurry (sharpness {report.blur:g}, at least {t.blur_threshold:g} needed); "
                         f"send a sharper photo, taken in good light with a steady hand")
        return report
    report.ok = True
    return report
