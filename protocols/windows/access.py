"""Who may enroll in which template: the seam between where permissions come from (the
configuration's ``enroll`` lists, or a directory's security descriptors) and the policy
and enrollment code that asks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .settings import TemplateSettings


class Access(Protocol):
    """One authenticated caller's rights."""

    @property
    def name(self) -> str: ...

    def may_enroll(self, template: TemplateSettings) -> bool: ...

    def may_autoenroll(self, template: TemplateSettings) -> bool: ...


@dataclass(frozen=True)
class NamedAccess:
    """Rights by name, from the templates' ``enroll`` / ``autoenroll_for`` lists."""

    name: str

    def may_enroll(self, template: TemplateSettings) -> bool:
        return template.may_enroll(self.name)

    def may_autoenroll(self, template: TemplateSettings) -> bool:
        return template.may_autoenroll(self.name)
