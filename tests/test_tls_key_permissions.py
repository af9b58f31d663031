"""A TLS private key that group or others may read is refused, like every other secret
(ppxgb.wire.read_private_file): the network transport never loads it."""

import os
import shutil

import pytest

from ppxgb.errors import ParameterError
from ppxgb.tls import TLSConfig, make_test_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"), ["a"])["a"]


def with_key_mode(pki, tmp_path, mode):
    key = tmp_path / "a.key"
    shutil.copyfile(pki.key, key)
    os.chmod(key, mode)
    return TLSConfig(pki.cert, str(key), pki.ca)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_keys_load(pki, tmp_path, mode):
    cfg = with_key_mode(pki, tmp_path, mode)
    cfg.server_context()
    cfg.client_context()


def test_test_pki_writes_owner_only_keys(pki):
    assert os.stat(pki.key).st_mode & 0o777 == 0o600


# every permission bit of group and others, alone, and the usual umask result 0644
@pytest.mark.parametrize("mode", [0o640, 0o620, 0o610, 0o604, 0o602, 0o601, 0o644])
def test_keys_readable_by_others_are_refused(pki, tmp_path, mode):
    cfg = with_key_mode(pki, tmp_path, mode)
    for load in (cfg.check, cfg.server_context, cfg.client_context):
        with pytest.raises(ParameterError, match=r"tls\.key.*0600.*" + oct(mode)):
            load()
