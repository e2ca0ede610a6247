from twisted.application.service import ServiceMaker

streamd = ServiceMaker(
    "streamd", "streamd.tap", "Stream length-prefixed messages to every connected client.", "streamd"
)
