-- Sessionised clickstream: the heaviest transformation of the project (window over all events).
with ordered as (
    select
        *,
        row_number() over (partition by session_id order by event_at, event_id) as event_seq,
        count(*) over (partition by session_id) as session_events
    from {{ ref('stg_web_events') }}
)
select
    session_id,
    any_value(customer_id) filter (where customer_id is not null) as customer_id,
    min(event_at) as session_start_at,
    max(event_at) as session_end_at,
    cast(min(event_at) as date) as session_date,
    max(session_events) as events,
    count(*) filter (where event_type = 'page_view') as page_views,
    bool_or(event_type = 'checkout') as converted,
    arg_min(page, event_seq) as landing_page,
    max(loaded_at) as loaded_at
from ordered
group by session_id
