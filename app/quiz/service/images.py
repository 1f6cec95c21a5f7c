"""Pictures of questions, stored in PostgreSQL (every web process serves them), and the QR code of a
game's join link.

A picture's type is read from its first bytes, never from its name or the Content-Type it was sent
with: PNG, JPEG, GIF and WebP are taken; anything else (SVG among them: it may carry scripts) is not.
A stored picture never changes, so its id names its bytes for good (`image_url`). An account keeps
at most its quota of picture bytes, counted from the rows themselves.
"""
from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass

import segno
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts.models import User
from app.core.errors import Invalid, TooLarge, UnsupportedMediaType
from app.core.ids import new_id
from app.quiz.models import QuestionImage
from app.quiz.service.quizzes import image_url

# The types taken, each recognised by its signature; a WebP file is a RIFF container whose form is WEBP.
MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def detect_type(data: bytes) -> str | None:
    """The media type `data` is by its signature, or None when it is none of MEDIA_TYPES."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def store(db: Session, owner_id: uuid.UUID, data: bytes, quota_bytes: int) -> dict[str, object]:
    """Keep a picture `owner_id` uploaded, if their pictures stay within `quota_bytes`; a question of
    theirs may show it from then on."""
    if not data:
        raise Invalid("empty_body", "send the picture's bytes as the body")
    content_type = detect_type(data)
    if content_type is None:
        raise UnsupportedMediaType("unsupported_image", "send a PNG, JPEG, GIF or WebP picture")
    image = QuestionImage(id=new_id(), owner_id=owner_id, content_type=content_type, data=data,
                          size=len(data), sha256=hashlib.sha256(data).hexdigest())
    with db.begin():
        # One upload of an account at a time, so two cannot both take the quota's last bytes; NO KEY
        # UPDATE leaves the account's other writes (their foreign keys take KEY SHARE) free.
        db.execute(select(User.id).where(User.id == owner_id).with_for_update(key_share=True))
        used = db.execute(select(func.coalesce(func.sum(QuestionImage.size), 0))
                          .where(QuestionImage.owner_id == owner_id)).scalar_one()
        if used + image.size > quota_bytes:
            raise TooLarge("image_quota_exceeded",
                           f"your pictures may take {quota_bytes} bytes; {used} are taken and this one has "
                           f"{image.size} (pictures no question shows are deleted after a week)",
                           quota_bytes=quota_bytes, used_bytes=used)
        db.add(image)
    return {"id": str(image.id), "url": image_url(image.id), "content_type": content_type, "size": image.size}


@dataclass(frozen=True)
class StoredImage:
    content_type: str
    data: bytes
    sha256: str


def load(db: Session, image_id: uuid.UUID) -> StoredImage | None:
    with db.begin():
        row = db.execute(select(QuestionImage.content_type, QuestionImage.data, QuestionImage.sha256)
                         .where(QuestionImage.id == image_id)).one_or_none()
    return None if row is None else StoredImage(row.content_type, bytes(row.data), row.sha256)


# A QR code some 250 px wide: readable across a classroom from a projected screen, and by a phone.
QR_TARGET_PX = 264


def join_qr_svg(join_url: str, join_code: str) -> bytes:
    """The QR code of `join_url` as an SVG document (dark modules on a light background, a title
    for screen readers, no script)."""
    qr = segno.make(join_url, error="m", micro=False)
    width, _ = qr.symbol_size(scale=1)  # the quiet zone included
    out = io.BytesIO()
    qr.save(out, kind="svg", scale=max(1, QR_TARGET_PX // width), dark="#000000", light="#ffffff",
            title=f"QR code: join the game with PIN {join_code}", xmldecl=False, nl=False)
    return out.getvalue()
