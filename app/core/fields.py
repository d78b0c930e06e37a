"""The fields of a description (app/captioning/description.py), named here so that settings
(per-bucket field sets) can be checked without importing the captioners."""

from typing import Literal, get_args

FieldName = Literal["caption", "alt_text", "description", "tags", "text_in_image"]
FIELDS: tuple[FieldName, ...] = get_args(FieldName)
# A BCP 47 tag's shape (RFC 5646 §2.1, without grandfathered tags): de, pt-BR, zh-Hant-TW
LANGUAGE_TAG = r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$"
