"""What a caption is: one image's description in one language, field by field.

The contract between the captioners (which fill a `Description`) and the pipeline (which
stores one per image and language). A backend fills what its model can and names the rest
in `missing`: BLIP fills `caption` and `alt_text`; a vision-language model fills them all.
"""

from pydantic import BaseModel, Field

from app.core.fields import FIELDS, LANGUAGE_TAG, FieldName

__all__ = [
    "ALT_TEXT_MAX_CHARS",
    "FIELDS",
    "LANGUAGE_TAG",
    "DescribeRequest",
    "Description",
    "FieldName",
]

ALT_TEXT_MAX_CHARS = 125  # the default of the ALT_TEXT_MAX_CHARS setting


class DescribeRequest(BaseModel):
    """What to ask the model for: the language (BCP 47), the fields wanted, an extra prompt."""

    language: str = Field(default="en", pattern=LANGUAGE_TAG, max_length=35)
    fields: tuple[FieldName, ...] = FIELDS
    prompt: str | None = None


class Description(BaseModel):
    """One image's description in one language."""

    language: str = "en"
    caption: str
    alt_text: str = ""
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    text_in_image: str = ""
    missing: list[FieldName] = Field(default_factory=list)

    @classmethod
    def from_caption(
        cls,
        caption: str,
        request: DescribeRequest | None = None,
        alt_text_max_chars: int | None = None,
    ) -> "Description":
        """A plain sentence: it is the caption and the alt text (when it is not longer than
        `alt_text_max_chars`); every other field asked for is missing."""
        request = request or DescribeRequest()
        fits = alt_text_max_chars is None or len(caption) <= alt_text_max_chars
        filled = {"caption", "alt_text"} if fits else {"caption"}
        return cls(
            language=request.language,
            caption=caption,
            alt_text=caption if fits else "",
            missing=[name for name in request.fields if name not in filled],
        )
