select
    customer_id,
    first_name,
    last_name,
    email,
    country,
    signup_date,
    loaded_at
from {{ source('raw', 'customers') }}
