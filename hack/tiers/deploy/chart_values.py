#!/usr/bin/env python3
"""Every value in the chart's values.yaml is used by a template: each leaf's path, or a parent
of it rendered whole (toYaml / with), appears as .Values.<path> in a template.

usage: chart_values.py CHART_DIR
"""
import os
import re
import sys

import yaml


def leaves(node, path=()):
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from leaves(v, path + (str(k),))
    else:
        yield path


def main(chart):
    with open(os.path.join(chart, "values.yaml")) as f:
        values = yaml.safe_load(f)
    text = ""
    for root, _, files in os.walk(os.path.join(chart, "templates")):
        for name in files:
            with open(os.path.join(root, name)) as f:
                text += f.read()
    used = set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text))
    unused = []
    for leaf in leaves(values):
        prefixes = {".".join(leaf[:i]) for i in range(1, len(leaf) + 1)}
        if not prefixes & used:
            unused.append(".".join(leaf))
    for u in unused:
        print(f"FAIL: value {u} is not used by any template")
    print(f"chart values: {len(list(leaves(values)))} checked, {len(unused)} unused")
    return 1 if unused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
