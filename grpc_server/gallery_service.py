"""The GalleryService servicer: thin. Enrolments and verifications go through the pipeline
like any image (`pipeline`), checked first (`gallery_requests`); listing and forgetting
are the gallery store's (facestream/gallery_store.py), run off the event loop. Each call
runs as its principal and sees only its own galleries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import grpc
from grpc import aio

from facestream.embeddings import embedding_of
from facestream.gallery_store import (
    NO_STORE,
    VGG_FACE_COSINE_THRESHOLD,
    GalleryStore,
    GalleryStoreError,
)
from facestream.requests import RequestLimits, new_request_id
from facestream.v1 import analyze_service_pb2, analyze_service_pb2_grpc, records_pb2
from grpc_server.auth import CallAuthorization
from grpc_server.errors import RequestRejectedError, refuse
from grpc_server.gallery_requests import (
    check_names,
    check_threshold,
    closest_pair,
    enrol_request_id,
    enrolled_images,
    enrolment_records,
    faces_of,
    refused,
    store_refusal,
    verification_record,
)
from grpc_server.pipeline import Pipeline, PipelineServicer, time_left
from grpc_server.principals import GALLERY_READ, GALLERY_WRITE, READ, SUBMIT

SERVICE = analyze_service_pb2.DESCRIPTOR.services_by_name["GalleryService"]
SERVICE_NAME = SERVICE.full_name
T = TypeVar("T")


class GalleryServicer(PipelineServicer, analyze_service_pb2_grpc.GalleryServiceServicer):
    service_name = SERVICE_NAME

    def __init__(
        self, limits: RequestLimits, pipeline: Pipeline, store: GalleryStore | None
    ) -> None:
        super().__init__(pipeline)
        self._limits = limits
        self._store = store

    async def Enroll(
        self, request: analyze_service_pb2.EnrollRequest, context: aio.ServicerContext
    ) -> analyze_service_pb2.EnrollReply:
        authorization = await self._authorize(context, "Enroll", GALLERY_WRITE)
        principal = authorization.principal.name
        try:
            request_id = enrol_request_id(request.request_id or new_request_id())
            with self._pipeline.admission.hold_image(
                principal, sum(len(image) for image in request.images)
            ):
                records = enrolment_records(request, self._limits, principal, request_id)
                results = await self._through_pipeline(records, authorization, context)
            images = enrolled_images(results)
            written = [image for image in images if image.face_id]
            if not written:
                first = images[0].error
                raise refused(first.code, first.message, request_id)
            return analyze_service_pb2.EnrollReply(
                request_id=request_id,
                gallery=request.gallery,
                subject=request.subject,
                images=images,
            )
        except RequestRejectedError as rejected:
            await refuse(context, rejected)

    async def Verify(
        self, request: analyze_service_pb2.VerifyRequest, context: aio.ServicerContext
    ) -> analyze_service_pb2.VerifyReply:
        against = request.WhichOneof("against")
        scopes = (SUBMIT, READ, GALLERY_READ) if against == "subject" else (SUBMIT, READ)
        authorization = await self._authorize(context, "Verify", *scopes)
        principal = authorization.principal.name
        threshold = request.threshold if request.HasField("threshold") else None
        try:
            check_threshold(threshold)
            if against is None:
                raise RequestRejectedError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "verify.bad_request",
                    "Verify needs other_image or subject to compare the image with",
                )
            if against == "subject":
                check_names(request.subject.gallery, request.subject.subject)
            images = [request.image] + ([request.other_image] if against == "other_image" else [])
            request_id = new_request_id()
            with self._pipeline.admission.hold_image(principal, sum(map(len, images))):
                records = [
                    verification_record(
                        image,
                        request.detector_backend,
                        self._limits,
                        principal,
                        f"{request_id}:{index}",
                    )
                    for index, image in enumerate(images)
                ]
                results = await self._through_pipeline(records, authorization, context)
            by_index = sorted(results, key=lambda r: r.request_id)
            faces = faces_of(by_index[0], "the image")
            reply = analyze_service_pb2.VerifyReply(
                threshold=VGG_FACE_COSINE_THRESHOLD if threshold is None else threshold
            )
            if against == "other_image":
                face, other, distance = closest_pair(faces, faces_of(by_index[1], "other_image"))
                reply.other_region.CopyFrom(other.region)
            else:
                subject = request.subject
                nearest = await self._stored(
                    lambda store: store.nearest_of_subject(
                        principal,
                        subject.gallery,
                        subject.subject,
                        [embedding_of(f) for f in faces],  # type: ignore[misc]
                    )
                )
                best = min(range(len(faces)), key=lambda i: nearest[i].distance)
                face, distance = faces[best], nearest[best].distance
                reply.face_id = nearest[best].face_id
            reply.region.CopyFrom(face.region)
            reply.distance = distance
            reply.verified = distance <= reply.threshold
            return reply
        except RequestRejectedError as rejected:
            await refuse(context, rejected)

    async def ListGalleries(
        self, request: analyze_service_pb2.ListGalleriesRequest, context: aio.ServicerContext
    ) -> analyze_service_pb2.ListGalleriesReply:
        principal = (await self._authorize(context, "ListGalleries", GALLERY_READ)).principal
        try:
            galleries = await self._stored(lambda store: store.galleries(principal.name))
        except RequestRejectedError as rejected:
            await refuse(context, rejected)
        return analyze_service_pb2.ListGalleriesReply(
            galleries=[
                analyze_service_pb2.GalleryInfo(
                    gallery=g.gallery, subjects=g.subjects, faces=g.faces
                )
                for g in galleries
            ]
        )

    async def ListSubjects(
        self, request: analyze_service_pb2.ListSubjectsRequest, context: aio.ServicerContext
    ) -> analyze_service_pb2.ListSubjectsReply:
        principal = (await self._authorize(context, "ListSubjects", GALLERY_READ)).principal
        try:
            check_names(request.gallery)
            subjects = await self._stored(
                lambda store: store.subjects(principal.name, request.gallery)
            )
        except RequestRejectedError as rejected:
            await refuse(context, rejected)
        return analyze_service_pb2.ListSubjectsReply(
            subjects=[
                analyze_service_pb2.SubjectInfo(subject=s.subject, faces=s.faces) for s in subjects
            ]
        )

    async def Forget(
        self, request: analyze_service_pb2.ForgetRequest, context: aio.ServicerContext
    ) -> analyze_service_pb2.ForgetReply:
        principal = (await self._authorize(context, "Forget", GALLERY_WRITE)).principal.name
        # An enrolment accepted before this moment does not bring back what is forgotten.
        now = datetime.now(UTC)
        try:
            if request.face_id:
                if request.subject:
                    raise RequestRejectedError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "forget.bad_request",
                        "Forget takes a subject or a face_id, not both",
                    )
                await self._stored(lambda store: store.forget_face(principal, request.face_id, now))
                return analyze_service_pb2.ForgetReply(faces_erased=1)
            check_names(request.gallery, request.subject or None)
            erased = await self._stored(
                lambda store: (
                    store.forget_subject(principal, request.gallery, request.subject, now)
                    if request.subject
                    else store.forget_gallery(principal, request.gallery, now)
                )
            )
            return analyze_service_pb2.ForgetReply(faces_erased=erased)
        except RequestRejectedError as rejected:
            await refuse(context, rejected)

    async def _stored(self, call: Callable[[GalleryStore], T]) -> T:
        """A store call, off the event loop; its errors as the call's typed refusal."""
        try:
            if self._store is None:
                raise NO_STORE
            store = self._store
            return await asyncio.to_thread(call, store)
        except GalleryStoreError as error:
            raise store_refusal(error) from None

    async def _through_pipeline(
        self,
        records: list[records_pb2.ImageSubmitted],
        authorization: CallAuthorization,
        context: aio.ServicerContext,
    ) -> list[records_pb2.AnalysisResult]:
        """Publish the records and wait for every result, within the call's deadline. A
        retry publishes again and waits for the new answers (the store writes a face once,
        and a retry after a Forget must hear of it)."""
        pipeline = self._pipeline
        principal = authorization.principal.name
        ids = [record.request_id for record in records]
        with (
            pipeline.admission.call(principal),
            pipeline.listener.waiter(ids, principal, recent=False) as waiter,
        ):
            for record in records:
                await pipeline.publish(record, context)
            results = []
            deadline = asyncio.get_running_loop().time() + time_left(
                context, pipeline.result_timeout
            )
            while not waiter.complete:
                left = max(0.0, deadline - asyncio.get_running_loop().time())
                try:
                    results.append(await pipeline.next_result(waiter, authorization, left))
                except TimeoutError:
                    raise RequestRejectedError(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        "result.timeout",
                        f"{waiter.missing} of {len(ids)} images were not answered in time; "
                        "retry with the same request id",
                        ids[0].rsplit(":", 1)[0],
                    ) from None
            return results
