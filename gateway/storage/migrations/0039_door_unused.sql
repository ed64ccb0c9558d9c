-- "Door not opened for days" (多日未开门, issue 12 kit): a care incident type asking for a
-- welfare check, and its door-knock task reason (the visits sweep opens one when nobody
-- resolves the incident, as for no_activity).
ALTER TABLE incidents DROP CONSTRAINT incidents_type_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_type_check CHECK (type IN (
    'emergency_call', 'fall', 'not_up', 'night_bed_exit', 'no_activity',
    'motionless_in_bed', 'vitals_abnormal', 'apnea', 'not_worn',
    'device_offline', 'hub_offline', 'site_offline', 'low_battery',
    'device_clock_wrong',
    'smoke_alarm', 'gas_alarm', 'water_leak', 'door_open_at_night', 'device_tampered',
    'door_unused'));
ALTER TABLE door_knock_tasks DROP CONSTRAINT door_knock_tasks_reason_check;
ALTER TABLE door_knock_tasks ADD CONSTRAINT door_knock_tasks_reason_check CHECK (reason IN (
    'no_activity', 'home_silent', 'unreachable', 'door_unused'));
