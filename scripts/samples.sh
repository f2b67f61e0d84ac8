#!/usr/bin/env bash
# Download a small public chest CT set for demos and the kind end-to-end test (`make samples`).
#
# What:    TCIA Lung-PET-CT-Dx, patient Lung_Dx-A0002: one chest CT study with two complete
#          axial series (30 slices each, 8 mm, Siemens Sensation 10, kernels B70f and B40f),
#          60 DICOM files, about 31 MB. Lung-cancer cases scanned in 2007: COVID-negative.
# Source:  The Cancer Imaging Archive, collection Lung-PET-CT-Dx, DOI 10.7937/TCIA.2020.NNC20461,
#          as mirrored in the public GitHub repository huyenbui117/lung_CT at commit
#          520adfe9e2e8e2b8c02985b228002c5b2997e5b6 (path Lung-PET-CT-Dx/manifest-1675442780019/).
# Licence: Creative Commons Attribution 4.0 (CC BY 4.0) and the TCIA Data Usage Policy.
#          Cite: Li P, et al. A Large-Scale CT and PET/CT Dataset for Lung Cancer Diagnosis
#          [Data set]. The Cancer Imaging Archive, 2020.
#
# Usage:   scripts/samples.sh [DEST]        (default: $COVIDCT_SAMPLES_DIR, else ./.samples)
# Then:    COVIDCT_SAMPLES="$PWD/.samples" pytest -m e2e tests/e2e
# Layout:  DEST/tcia-lung-pet-ct-dx/Lung_Dx-A0002/<study>/<series>/*.dcm, as in ../shared/data.
# Needs:   git >= 2.27 and access to github.com. Only the needed blobs are fetched.
set -euo pipefail

REPO_URL="https://github.com/huyenbui117/lung_CT.git"
COMMIT="520adfe9e2e8e2b8c02985b228002c5b2997e5b6"
MANIFEST="Lung-PET-CT-Dx/manifest-1675442780019"
PATIENT="Lung_Dx-A0002"
EXPECTED_FILES=60

DEST="${1:-${COVIDCT_SAMPLES_DIR:-.samples}}"
TARGET="$DEST/tcia-lung-pet-ct-dx"

count_dicom() { find "$1" -type f -name '*.dcm' 2>/dev/null | wc -l | tr -d ' '; }

if [ -d "$TARGET/$PATIENT" ] && [ "$(count_dicom "$TARGET/$PATIENT")" -eq "$EXPECTED_FILES" ]; then
  echo "samples already present in $TARGET"
  exit 0
fi

command -v git >/dev/null || { echo "git is required" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

git -C "$WORK" init -q
git -C "$WORK" remote add origin "$REPO_URL"
git -C "$WORK" config core.sparseCheckout true
git -C "$WORK" sparse-checkout set --no-cone \
  "/$MANIFEST/Lung-PET-CT-Dx/$PATIENT/" \
  "/$MANIFEST/LICENSE" \
  "/$MANIFEST/metadata.csv"
git -C "$WORK" fetch -q --depth 1 --filter=blob:none origin "$COMMIT"
git -C "$WORK" -c advice.detachedHead=false checkout -q FETCH_HEAD

found="$(count_dicom "$WORK/$MANIFEST/Lung-PET-CT-Dx/$PATIENT")"
if [ "$found" -ne "$EXPECTED_FILES" ]; then
  echo "expected $EXPECTED_FILES DICOM files, got $found" >&2
  exit 1
fi

mkdir -p "$TARGET"
rm -rf "${TARGET:?}/$PATIENT"
cp -R "$WORK/$MANIFEST/Lung-PET-CT-Dx/$PATIENT" "$TARGET/"
for extra in LICENSE metadata.csv; do
  if [ -f "$WORK/$MANIFEST/$extra" ]; then cp "$WORK/$MANIFEST/$extra" "$TARGET/"; fi
done
cat > "$TARGET/SOURCE.txt" <<SOURCE
Origin: GitHub huyenbui117/lung_CT @ $COMMIT, path $MANIFEST/Lung-PET-CT-Dx/$PATIENT
Underlying data: TCIA collection Lung-PET-CT-Dx, DOI 10.7937/TCIA.2020.NNC20461
Licence: CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/) + TCIA Data Usage Policy
Citation: Li P, et al. A Large-Scale CT and PET/CT Dataset for Lung Cancer Diagnosis [Data set].
  The Cancer Imaging Archive, 2020.
Content: $PATIENT, one chest CT study, two axial series of 30 slices (8 mm), COVID-negative.
Downloaded by scripts/samples.sh on $(date -u +%Y-%m-%d).
SOURCE
echo "wrote $EXPECTED_FILES DICOM files to $TARGET/$PATIENT (CC BY 4.0, see SOURCE.txt)"
