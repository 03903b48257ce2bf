#!/usr/bin/env bash
# Build and push the images to <region>-docker.pkg.dev/<project>/batch-images/<name>:<version>
# and record each pushed digest in images/versions.json (the one place that says which
# version of each image the jobs use; bin/check rule GPUB_JOB_12 reads it).
#
#   images/build.sh --project P --region R [--local] [NAME...]
#
# The tag is the image's `version` in images/versions.json: bump it there to build a new one.
# A version whose digest is already recorded for this registry is not rebuilt (tags are
# releases; moving one would change what running jobs pull).
# Default: Cloud Build with images/cloudbuild.yaml, one build per image (no local Docker).
# --local: docker build + docker push from this machine (needs
#          `gcloud auth configure-docker R-docker.pkg.dev` once).
# NAME: runner, uppercase, embed (default: all).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$here/../.venv/bin/python"; [[ -x "$py" ]] || py=python3
versions() { "$py" "$here/record_digest.py" "$@"; }
project="" region="" local_mode=0 names=()
while (($#)); do
  case "$1" in
    --project) project="$2"; shift 2 ;;
    --region) region="$2"; shift 2 ;;
    --local) local_mode=1; shift ;;
    --tag) echo "--tag is gone: the tag is the image's version in images/versions.json" >&2; exit 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[[ -n "$project" && -n "$region" ]] || { echo "--project and --region are required" >&2; exit 2; }
((${#names[@]})) || names=(runner uppercase embed)
registry="${region}-docker.pkg.dev/${project}/batch-images"

declare -A tag
todo=()
for name in "${names[@]}"; do
  [[ -f "$here/$name/Dockerfile" ]] || { echo "no image named $name" >&2; exit 2; }
  tag[$name]="$(versions version "$name")"
  if [[ -n "$(versions digest "$name" "$registry")" ]]; then
    echo "$registry/$name:${tag[$name]} is already built (digest recorded); bump its version" \
         "in images/versions.json to build a new one" >&2
    continue
  fi
  todo+=("$name")
done
((${#todo[@]})) || { echo "nothing to build"; exit 0; }

for name in "${todo[@]}"; do
  if ((local_mode)); then
    docker build -f "$here/$name/Dockerfile" -t "$registry/$name:${tag[$name]}" "$here"
    docker push "$registry/$name:${tag[$name]}"
  else
    gcloud builds submit "$here" --project "$project" --config "$here/cloudbuild.yaml" \
      --substitutions "_REGION=${region},_IMAGE=${name},_TAG=${tag[$name]}"
  fi
done
for name in "${todo[@]}"; do
  # The digest the registry holds for the tag just pushed:
  # https://cloud.google.com/sdk/gcloud/reference/artifacts/docker/images/describe
  digest="$(gcloud artifacts docker images describe "$registry/$name:${tag[$name]}" \
    --project "$project" --format 'value(image_summary.digest)')"
  versions record "$name" "$registry" "$digest"
  echo "pushed $registry/$name:${tag[$name]} ($digest), recorded in images/versions.json"
done
