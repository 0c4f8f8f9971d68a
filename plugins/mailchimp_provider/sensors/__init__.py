"""Sensors: ``sensors.batch.MailchimpBatchSensor``."""
