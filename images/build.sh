#!/usr/bin/env bash
# Build and push the images to <region>-docker.pkg.dev/<project>/batch-images/<name>:<tag>.
#
#   images/build.sh --project P --region R [--tag T] [--local] [NAME...]
#
# Default: Cloud Build with images/cloudbuild.yaml (no local Docker needed).
# --local: docker build + docker push from this machine (needs
#          `gcloud auth configure-docker R-docker.pkg.dev` once).
# NAME: runner, uppercase, embed (default: all; --local only).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
project="" region="" tag="$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo latest)"
local_mode=0 names=()
while (($#)); do
  case "$1" in
    --project) project="$2"; shift 2 ;;
    --region) region="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --local) local_mode=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
[[ -n "$project" && -n "$region" ]] || { echo "--project and --region are required" >&2; exit 2; }
((${#names[@]})) || names=(runner uppercase embed)
registry="${region}-docker.pkg.dev/${project}/batch-images"

if ((local_mode)); then
  for name in "${names[@]}"; do
    [[ -f "$here/$name/Dockerfile" ]] || { echo "no image named $name" >&2; exit 2; }
    docker build -f "$here/$name/Dockerfile" -t "$registry/$name:$tag" "$here"
    docker push "$registry/$name:$tag"
  done
else
  gcloud builds submit "$here" --project "$project" --config "$here/cloudbuild.yaml" \
    --substitutions "_REGION=${region},_TAG=${tag}"
fi
echo "pushed to $registry (tag $tag)"
