-- Monthly sign-up cohorts against every later month of activity: the heavy mart.
with activity as (
    select distinct
        customer_id,
        cast(date_trunc('month', order_date) as date) as activity_month
    from {{ ref('fct_orders') }}
),
cohorts as (
    select customer_id, cast(date_trunc('month', signup_date) as date) as cohort_month
    from {{ ref('dim_customers') }}
),
sizes as (
    select cohort_month, count(*) as cohort_size from cohorts group by 1
)
select
    c.cohort_month,
    a.activity_month,
    datediff('month', c.cohort_month, a.activity_month) as months_since_signup,
    count(distinct a.customer_id) as active_customers,
    any_value(s.cohort_size) as cohort_size,
    count(distinct a.customer_id) / any_value(s.cohort_size) as retention
from cohorts as c
join activity as a on a.customer_id = c.customer_id and a.activity_month >= c.cohort_month
join sizes as s on s.cohort_month = c.cohort_month
group by 1, 2, 3
