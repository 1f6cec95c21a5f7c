"""The keys of access tokens (app/accounts/tokens.py), without any service: derived, loaded, refused."""
from __future__ import annotations

import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from app.accounts.tokens import check_token_keys, issue_token, read_token, shared_secret, token_keys
from app.core.config import ConfigError, load_config


def _config(**settings: str):
    return load_config({"SECRET_KEY": "s" * 40, **settings})


def test_the_hs256_key_is_derived_from_the_secret_key_and_is_not_it():
    secret = shared_secret("s" * 40)
    assert len(secret) == 43 and secret != "s" * 40 and secret != shared_secret("t" * 40)
    assert token_keys(_config()).signing == secret.encode()


def test_the_derived_es256_key_is_the_same_in_every_process_of_one_secret_key():
    first, again = token_keys(_config(JWT_ALGORITHM="ES256")), token_keys(_config(JWT_ALGORITHM="es256"))
    other = token_keys(load_config({"SECRET_KEY": "t" * 40, "JWT_ALGORITHM": "ES256"}))
    assert first.public_pem() == again.public_pem() != other.public_pem()
    assert first.jwks()["keys"][0]["kid"] == first.key_id != other.key_id


def test_an_es256_key_file_signs_and_an_unfit_one_stops_the_web_at_its_start(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    good = tmp_path / "p256.pem"
    good.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    config = _config(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY_FILE=str(good))
    user = uuid.uuid4()
    assert read_token(config, issue_token(config, user, False)).user_id == user
    assert token_keys(config).public_pem() == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    unfit = tmp_path / "ed25519.pem"
    unfit.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    for path in (unfit, tmp_path / "missing.pem"):
        with pytest.raises(ConfigError, match="JWT_PRIVATE_KEY_FILE"):
            check_token_keys(_config(JWT_ALGORITHM="ES256", JWT_PRIVATE_KEY_FILE=str(path)))


def test_only_hs256_and_es256_are_settings():
    with pytest.raises(ConfigError, match="JWT_ALGORITHM"):
        load_config({"JWT_ALGORITHM": "none"})


def test_a_token_read_again_is_not_verified_again_and_still_expires_at_its_exp(monkeypatch):
    from app.accounts import tokens

    config = _config(TOKEN_TTL_S="60")
    user = uuid.uuid4()
    token = issue_token(config, user, True)
    decodes = []
    decode = tokens.jwt.decode
    monkeypatch.setattr(tokens.jwt, "decode", lambda *a, **k: decodes.append(1) or decode(*a, **k))
    assert read_token(config, token).user_id == read_token(config, token).user_id == user
    assert len(decodes) == 1
    issued = tokens.time.time()
    monkeypatch.setattr(tokens.time, "time", lambda: issued + 61)
    with pytest.raises(tokens.InvalidToken, match="token expired"):
        read_token(config, token)


def test_a_refused_token_is_not_remembered():
    from app.accounts import tokens

    config = _config()
    forged = issue_token(_config(SECRET_KEY="f" * 40), uuid.uuid4(), True)
    kept = tokens._verified_jwt.cache_info().currsize
    for _ in range(2):
        with pytest.raises(tokens.InvalidToken, match="token invalid"):
            read_token(config, forged)
    assert tokens._verified_jwt.cache_info().currsize == kept


def test_the_hmac_key_is_checked_once_per_process_not_with_each_token(monkeypatch):
    """PyJWT checks with every sign and verify that an HS256 key is no asymmetric key (parsing it as DER
    twice): the check depends on the key alone, so it runs once per key."""
    from jwt.algorithms import HMACAlgorithm

    config = _config(SECRET_KEY="k" * 8 + uuid.uuid4().hex)  # a key no other test has checked
    checks = []
    prepare = HMACAlgorithm.prepare_key
    monkeypatch.setattr(HMACAlgorithm, "prepare_key",
                        lambda self, key: checks.append(key) or prepare(self, key))
    for user in (uuid.uuid4(), uuid.uuid4(), uuid.uuid4()):
        assert read_token(config, issue_token(config, user, True)).user_id == user
    assert checks == [token_keys(config).verifying]


def test_an_asymmetric_key_is_refused_as_an_hmac_secret_every_time():
    import jwt

    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for _ in range(2):
        with pytest.raises(jwt.InvalidKeyError):
            jwt.encode({"sub": "x"}, pem, algorithm="HS256")
        with pytest.raises(jwt.InvalidKeyError):
            jwt.decode(jwt.encode({"sub": "x"}, "s" * 40, algorithm="HS256"), pem, algorithms=["HS256"])
