#!/usr/bin/env python3
"""Checks a usertrail `export log` file without usertrail: standard library only.

Each line: sha256(bytes) == hash; prevHash == the previous line's hash
(all zeros before record 1); seqs consecutive from the first line's.
Prints `chain intact: records A-B` and exits 0, or names the first bad line
and exits 1.
"""
import base64, hashlib, json, sys

def check(path):
    prev, expected_seq = None, None
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, start=1):
            line = json.loads(text)
            if hashlib.sha256(base64.b64decode(line["bytes"], validate=True)).hexdigest() != line["hash"]:
                return f"line {n}: hash is not the SHA-256 of bytes"
            if expected_seq is None:
                expected_seq = line["seq"]
                if expected_seq == 1:
                    prev = "0" * 64
            if line["seq"] != expected_seq:
                return f"line {n}: record {line['seq']}, expected {expected_seq}"
            if prev is not None and line["prevHash"] != prev:
                return f"line {n}: prevHash is not the previous record's hash"
            prev, expected_seq = line["hash"], expected_seq + 1
    if expected_seq is None:
        return "no records"
    first = expected_seq - n
    print(f"chain intact: records {first}-{expected_seq - 1}")
    return None

if __name__ == "__main__":
    problem = check(sys.argv[1])
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(1)
