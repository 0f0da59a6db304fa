select
    customer_id,
    arg_min(landing_page, session_start_at) as first_landing_page,
    min(session_date) as first_session_date
from {{ ref('int_sessions') }}
where customer_id is not null
group by customer_id
