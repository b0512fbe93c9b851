"""The storybook team's data model and binder: a plan with a fixed cast, pages with text, a picture
and a recording, bound into one self-contained HTML file, an EPUB 3 and a manifest."""

from raygent.apps.story.binder import BoundBook, bind
from raygent.apps.story.book import (
    AssetProblem,
    Character,
    PagePlan,
    StoryBook,
    StoryPage,
    StoryPlan,
    StoryPlanError,
)

__all__ = ["AssetProblem", "BoundBook", "Character", "PagePlan", "StoryBook", "StoryPage", "StoryPlan",
           "StoryPlanError", "bind"]
