"""checkov custom checks (`--external-checks-dir policies/checks`), ids CKV_GPUB_<n>.

checkov execs every `.py` file here as a top-level module named after the file, so the check
files carry a `gpub_` prefix to stay clear of other module names.
"""
