"""The OpenAPI schema states the error answers too, not only the happy one.

drf-spectacular documents only 200/201/202. A client (and schemathesis, which checks that every status
code it receives is documented) must also learn what every operation answers when the token is missing
or not live (401), when it is throttled (429), what a path id it may not see gives (404, never 403:
other customers' objects do not exist), what an action the role may not take gives (403), and what a
rejected filter or request gives (400).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer[Any]):
    detail = serializers.CharField(help_text="Why the request was refused")


# The views' ValidationError body: each rejected parameter (or "detail") with why, as one string.
VALIDATION_ERROR: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


class ApiAutoSchema(AutoSchema):
    """AutoSchema that adds the error responses each /api/v1/ operation can give."""

    def error_responses(self) -> dict[str, OpenApiResponse]:
        errors = {
            "401": OpenApiResponse(ErrorSerializer, description="No token, or one that is not live"),
            "429": OpenApiResponse(ErrorSerializer, description="Too many requests with this token"),
        }
        if "{" in self.path or self.method == "POST":  # a POST's body names objects too (servers, a customer)
            errors["404"] = OpenApiResponse(ErrorSerializer, description="No such object among those you may see")
        elif self.method == "GET" and self._get_paginator() is not None:  # type: ignore[no-untyped-call]
            errors["404"] = OpenApiResponse(ErrorSerializer, description="The cursor is not valid")
        if self.method != "GET" or getattr(self.view, "reads_need_a_role", False):  # credentials: MSP admins only
            errors["403"] = OpenApiResponse(ErrorSerializer, description="Your role or token may not do this")
        if self.method != "GET":
            errors["415"] = OpenApiResponse(ErrorSerializer, description="A body that is not application/json")
        if self.method != "GET" or any(
            isinstance(parameter, OpenApiParameter) and parameter.location == OpenApiParameter.QUERY
            for parameter in self.get_override_parameters()
        ):
            errors["400"] = OpenApiResponse(VALIDATION_ERROR, description="A rejected filter or request")
        return errors

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":  # a webhook's (api.webhooks): the receiver answers, not this API
            return responses
        for code, response in sorted(self.error_responses().items()):
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, direction=direction)  # type: ignore[no-untyped-call]
        return responses
