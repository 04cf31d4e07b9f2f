"""Known checksums of the canonical data files, shipped with the package.

Music: the SHA-256 of each ``.mat`` file, from ``data/music/SOURCE.md``.

FSDD: the upstream project publishes no per-file checksums and GitHub archives are not
byte-stable, so we check the extracted recordings with a manifest digest computed from
the project's copy (3,000 files) by :func:`rnnbench.data.fetch.manifest_digest`: SHA-256 over
the files sorted by name, each contributing ``name``, a NUL byte, its size as 8 bytes
little-endian, and its bytes.
"""

MUSIC_SHA256 = {
    "JSB_Chorales.mat": "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4",
    "Nottingham.mat": "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea",
    "MuseData.mat": "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff",
    "Piano_midi.mat": "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34",
}

FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
FSDD_FILES = 3000
FSDD_MANIFEST_SHA256 = "2f17dea19a57e5b41c96377cc76619e34da46105a595ef978b7d26466f8a9689"
