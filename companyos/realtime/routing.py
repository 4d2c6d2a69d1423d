"""Websocket URL routes."""

from django.urls import path

from companyos.realtime.consumers import EventsConsumer

websocket_urlpatterns = [
    path("ws/events/", EventsConsumer.as_asgi()),
]
