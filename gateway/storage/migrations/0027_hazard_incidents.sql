-- Hazard and kit incidents (issue 12 §2, §3): smoke and gas alarms (priority 1, their own
-- escalation ladder), a water leak (a care incident of lower priority), a door left open at
-- night, and a kit sensor's tamper switch (technical).
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = 'incidents'::regclass AND contype = 'c'
          AND pg_get_constraintdef(oid) LIKE '%''emergency_call''%'
    LOOP
        EXECUTE format('ALTER TABLE incidents DROP CONSTRAINT %I', c.conname);
    END LOOP;
END
$$;
ALTER TABLE incidents ADD CONSTRAINT incidents_type_check CHECK (type IN (
    'emergency_call', 'fall', 'not_up', 'night_bed_exit', 'no_activity',
    'motionless_in_bed', 'vitals_abnormal', 'apnea', 'not_worn',
    'device_offline', 'hub_offline', 'site_offline', 'low_battery',
    'device_clock_wrong',
    'smoke_alarm', 'gas_alarm', 'water_leak', 'door_open_at_night', 'device_tampered'));
