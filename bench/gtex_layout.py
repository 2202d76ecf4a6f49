"""Generate a GTEx v8 transcript-TPM GCT in the exact layout, for benchmarks (not tests).

All 17,382 sample columns of GTEx v8, per tissue as many as the GTEx portal lists
(``GTEx_Portal.csv`` in the real-data folder). Sample IDs: the 175 real Brain - Frontal Cortex
(BA9) IDs, then generated ones in the same format (``GTEX-XXXXX-NNNN-SM-XXXXX``). A matching
SampleAttributesDS (SAMPID, SMTS, SMTSD) is written beside it.

Values: ~55% zeros, the rest lognormal TPM printed with 2 decimals like RSEM's output. Rows are
drawn from a pool of distinct rows, each rotated by a random offset, so that generating 20,000
rows x 17,382 values takes seconds; a row (~70 kB) is longer than gzip's 32 kB window, so reused
rows do not compress better than fresh ones.
"""

from __future__ import annotations

import csv
import string
from pathlib import Path

import numpy as np
from xopen import xopen

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
ATTRS = REAL / "gtex_v8_sample_attrs" / "BrainFrontalCortex_v8_SampleAttributes_subset.tsv"
PORTAL = REAL / "gtex_v8_sample_attrs" / "GTEx_Portal.csv"

# SMTSD (portal name) -> SMTS, by GTEx's naming; names not listed map to themselves.
SMTS_OF = {
    "Adipose": "Adipose Tissue",
    "Artery": "Blood Vessel",
    "Brain": "Brain",
    "Breast": "Breast",
    "Cells - Cultured fibroblasts": "Skin",
    "Cells - EBV-transformed lymphocytes": "Blood",
    "Cervix": "Cervix Uteri",
    "Colon": "Colon",
    "Esophagus": "Esophagus",
    "Heart": "Heart",
    "Kidney": "Kidney",
    "Minor Salivary Gland": "Salivary Gland",
    "Muscle": "Muscle",
    "Nerve": "Nerve",
    "Skin": "Skin",
    "Small Intestine": "Small Intestine",
    "Whole Blood": "Blood",
}


def smts_of(smtsd: str) -> str:
    return SMTS_OF.get(smtsd, SMTS_OF.get(smtsd.split(" - ")[0], smtsd))


def gtex_samples(seed: int = 0) -> list[tuple[str, str, str]]:
    """(SAMPID, SMTS, SMTSD) for 17,382 samples in the GTEx v8 tissue proportions."""
    rng = np.random.default_rng(seed)
    with open(PORTAL) as fh:
        counts = [(r["Tissue"], int(r["# RNASeq Samples"])) for r in csv.DictReader(fh)]
    with open(ATTRS) as fh:
        real = [(r["SAMPID"], r["SMTSD"]) for r in csv.DictReader(fh, delimiter="\t")]
    alphabet = np.array(list(string.digits + string.ascii_uppercase))
    used = {s for s, _ in real}
    samples = []
    real_by_tissue: dict[str, list[str]] = {}
    for sid, smtsd in real:
        real_by_tissue.setdefault(smtsd, []).append(sid)
    for smtsd, n in counts:
        ids = real_by_tissue.get(smtsd, [])[:n]
        while len(ids) < n:
            sid = "GTEX-{}-{:04d}-SM-{}".format(
                "".join(rng.choice(alphabet, 5)),
                int(rng.integers(1, 3000)),
                "".join(rng.choice(alphabet, 5)),
            )
            if sid not in used:
                used.add(sid)
                ids.append(sid)
        samples += [(sid, smts_of(smtsd), smtsd) for sid in ids]
    order = rng.permutation(len(samples))  # GTEx columns are not grouped by tissue
    return [samples[i] for i in order]


def write_gtex_layout(
    out_dir: Path,
    n_rows: int,
    seed: int = 0,
    pool: int = 512,
    ids: list[tuple[str, str]] | None = None,
    gct_name: str = "transcript_tpm.gct.gz",
    attrs_name: str = "sample_attributes.tsv",
    real_columns: bool = False,
) -> dict:
    """Write ``gct_name`` and ``attrs_name`` under ``out_dir``.

    ``ids``: (transcript_id, gene_id) of each row (the first ``n_rows``), by default generated.
    ``real_columns``: the attributes file gets SampleAttributesDS's full header (63 columns),
    the real rows verbatim and, for generated samples, SAMPID, SMTS, SMTSD and SMAFRZE filled.
    Each row is a pre-formatted pool row rotated at a value boundary (bytes slicing, no
    per-value formatting), so the text is the same as rotating the list of values.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples = gtex_samples(seed)
    if ids is not None and len(ids) < n_rows:
        raise ValueError(f"{n_rows} rows asked for, {len(ids)} IDs given")
    attrs = out_dir / attrs_name
    with open(attrs, "w") as fh:
        if real_columns:
            with open(ATTRS) as real:
                header = real.readline().rstrip("\n").split("\t")
                rows = {line.split("\t", 1)[0]: line for line in real}
            fh.write("\t".join(header) + "\n")
            at = {name: i for i, name in enumerate(header)}
            for sid, smts, smtsd in samples:
                if sid in rows:
                    fh.write(rows[sid] if rows[sid].endswith("\n") else rows[sid] + "\n")
                    continue
                fields = [""] * len(header)
                fields[at["SAMPID"]], fields[at["SMTS"]], fields[at["SMTSD"]] = sid, smts, smtsd
                fields[at["SMAFRZE"]] = "RNASEQ"
                fh.write("\t".join(fields) + "\n")
        else:
            fh.write("SAMPID\tSMTS\tSMTSD\tSMAFRZE\n")
            for sid, smts, smtsd in samples:
                fh.write(f"{sid}\t{smts}\t{smtsd}\tRNASEQ\n")
    n = len(samples)
    tpm = rng.lognormal(0.5, 2.0, size=(pool, n)) * (rng.random((pool, n)) > 0.55)
    bodies, starts = [], []
    for r in tpm:
        values = [f"{v:.2f}" for v in r]
        bodies.append("\t".join(values).encode())
        starts.append(np.cumsum([0, *(len(v) + 1 for v in values[:-1])]))
    gct = out_dir / gct_name
    with xopen(gct, "wb", compresslevel=1, threads=1) as fh:
        fh.write(f"#1.2\n{n_rows}\t{n}\n".encode())
        fh.write(
            ("\t".join(["transcript_id", "gene_id", *(s for s, _, _ in samples)]) + "\n").encode()
        )
        for i in range(n_rows):
            body, start = bodies[i % pool], starts[i % pool]
            shift = int(rng.integers(n))
            cut = int(start[shift])
            tid, gid = (
                ids[i]
                if ids is not None
                else (f"ENST{i:011d}.{i % 9 + 1}", f"ENSG{i // 4:011d}.{i % 5 + 1}")
            )
            head = f"{tid}\t{gid}\t".encode()
            if cut:
                fh.write(head + body[cut:] + b"\t" + body[: cut - 1] + b"\n")
            else:
                fh.write(head + body + b"\n")
    return {"gct": gct, "attrs": attrs, "n_rows": n_rows, "n_samples": n}


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for the GCT and the attributes")
    parser.add_argument("rows", type=int, help="transcript rows of the GCT")
    args = parser.parse_args(argv)
    write_gtex_layout(args.out_dir, args.rows)


if __name__ == "__main__":
    main()
