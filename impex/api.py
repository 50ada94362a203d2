"""GET /api/problems/: the open problems of the caller's connection (SPEC sections 8 and 10)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from impex.api_schema import responses
from impex.choices import ProblemKind
from impex.services.problems import problems_open

MAX_PROBLEMS = 1000


class ProblemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ProblemKind.choices)
    message = serializers.CharField()
    since = serializers.DateTimeField()
    url = serializers.CharField(help_text="The hub's admin page where a person acts on it (retry, release, run again).")


class ProblemListSerializer(serializers.Serializer):
    results = ProblemSerializer(many=True)


class ProblemsView(APIView):
    """List what fails for the caller's connection and waits for a person (newest first, at most 1000)."""

    @extend_schema(
        responses=responses({200: ProblemListSerializer}, bad_body=False),
        summary="Open problems of the caller's connection",
    )
    def get(self, request):
        rows = problems_open(connection=request.user.connection)[:MAX_PROBLEMS]
        return Response(ProblemListSerializer({"results": rows}).data)
