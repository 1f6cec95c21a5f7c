"""Registered hosts and players, and nickname-only guests."""
from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from app.models import User
from app.services.errors import Conflict, Unauthorized

# Checked when the user does not exist, so a login takes as long either way.
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def register(db: Session, username: str, password: str) -> User:
    user = User(id=uuid.uuid4(), username=username, nickname=username[:32],
                password_hash=generate_password_hash(password), is_guest=False)
    try:
        with db.begin():
            db.add(user)
    except IntegrityError:
        raise Conflict("username_taken", "that username is taken") from None
    return user


def authenticate(db: Session, username: str, password: str) -> User:
    with db.begin():
        user = db.scalar(select(User).where(User.username == username, User.is_guest.is_(False)))
    if user is None or user.password_hash is None:
        check_password_hash(_DUMMY_HASH, password)
        raise Unauthorized("invalid_credentials", "wrong username or password")
    if not check_password_hash(user.password_hash, password):
        raise Unauthorized("invalid_credentials", "wrong username or password")
    return user


def create_guest(db: Session, nickname: str) -> User:
    user = User(id=uuid.uuid4(), username=None, nickname=nickname, password_hash=None, is_guest=True)
    with db.begin():
        db.add(user)
    return user
