-- Service records of home-care beds (issue 13 §4): what staff delivered to each bed, with
-- proof of presence (the elder's or bed's code), counted per bed per month for paying by the
-- quantity and quality of service.

CREATE TABLE service_records (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resident_id  text NOT NULL REFERENCES residents ON DELETE CASCADE,
    bed_id       text REFERENCES beds,
    service      text NOT NULL CHECK (service IN
                     ('visit', 'bathing', 'meals', 'medical_check', 'rehabilitation')),
    staff_id     text NOT NULL,                 -- user id of who delivered it
    delivered_at timestamptz NOT NULL,
    minutes      integer CHECK (minutes BETWEEN 1 AND 1440),
    proof_code   text NOT NULL,
    proof_method text NOT NULL CHECK (proof_method IN ('scan', 'typed')),
    notes        text CHECK (length(notes) <= 2000),
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_records_bed_time ON service_records (bed_id, delivered_at);
CREATE INDEX service_records_resident_time ON service_records (resident_id, delivered_at DESC);
