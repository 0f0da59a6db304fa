select
    event_id,
    session_id,
    customer_id,
    event_type,
    page,
    event_at,
    cast(event_at as date) as event_date,
    loaded_at
from {{ source('raw', 'web_events') }}
