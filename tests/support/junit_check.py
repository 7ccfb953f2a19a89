"""Checks a JUnit report the way Jenkins' junit plugin will read it:
valid against junit.xsd (beside this file), and every <testsuite>'s tests,
failures, errors and skipped counts match its testcases. Exit 0 when it is,
1 with the reasons when not.

Usage: python3 junit_check.py REPORT.xml
"""
import os
import sys
import xml.etree.ElementTree as ET

import xmlschema


def main(path):
    schema = xmlschema.XMLSchema10(os.path.join(os.path.dirname(__file__), "junit.xsd"))
    problems = [f"{e.path}: {e.reason}" for e in schema.iter_errors(path)]
    if not problems:
        root = ET.parse(path).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        for suite in suites:
            cases = suite.findall("testcase")
            counts = {
                "tests": len(cases),
                "failures": sum(1 for c in cases if c.find("failure") is not None),
                "errors": sum(1 for c in cases if c.find("error") is not None),
                "skipped": sum(1 for c in cases if c.find("skipped") is not None),
            }
            for attr, want in counts.items():
                got = suite.get(attr)
                if got is not None and int(got) != want:
                    problems.append(f"testsuite {suite.get('name')!r}: {attr}={got}, but {want} testcases say so")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
