select
    customer_id,
    count(*) as session_count,
    count(*) filter (where converted) as converted_sessions,
    max(session_date) as last_session_date
from {{ ref('int_sessions') }}
where customer_id is not null
group by customer_id
