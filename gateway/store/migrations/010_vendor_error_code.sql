-- What a charger's maker says about a connector's error (OCPP 1.6 StatusNotification vendorErrorCode), shown
-- beside the error code and info.
ALTER TABLE connector_status ADD COLUMN vendor_error_code TEXT;
